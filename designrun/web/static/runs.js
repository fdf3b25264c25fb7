// Runs list: "Load more" appends the next keyset page in place; the status filter applies on change.
(function () {
  "use strict";
  var list = document.getElementById("runs");
  var select = document.querySelector("[data-autosubmit]");
  if (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  }
  if (!list) { return; }
  list.addEventListener("click", function (event) {
    var link = event.target.closest("[data-load-more]");
    if (!link) { return; }
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    var url = new URL(link.href, location.href);
    url.searchParams.set("partial", "1");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var row = link.closest("[data-more-row]");
        var firstNew = row.nextElementSibling;
        row.insertAdjacentHTML("afterend", html);
        var added = row.nextElementSibling;
        row.remove();
        if (added && added !== firstNew) {
          var a = added.querySelector("a");
          if (a) { a.focus(); }
        }
      })
      .catch(function () { location.href = link.href; });
  });
})();
