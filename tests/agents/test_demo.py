"""The demo agent run as designrun-runner runs it: ``python -m designrun.agents.demo``.

Each run is a subprocess with DESIGNRUN_DEMO_DELAY=0 in a tmp folder. The bakery run is shared by
the tests that only read its outputs.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from designrun.agents import demo
from designrun.agents.protocol import PREFIX, parse_line

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENTS_DIR = REPO_ROOT / "designrun" / "agents"
FILES = ["design-system.json", "styles.css", "index.html", "preview.png", "report.md"]
BAKERY = "A landing page for a cozy neighbourhood bakery in Lisbon, calm and warm"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    output_dir: Path

    @property
    def messages(self) -> list[dict[str, Any]]:
        found = [parse_line(line) for line in self.stdout.splitlines()]
        return [m for m in found if m is not None]

    @property
    def plain_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if not line.startswith(PREFIX)]

    def progress(self) -> list[float]:
        return [m["progress"] for m in self.messages if "progress" in m]

    def artifacts(self) -> list[dict[str, Any]]:
        return [m["artifact"] for m in self.messages if "artifact" in m]

    def events(self, event_type: str) -> list[dict[str, Any]]:
        events = [m["event"] for m in self.messages if "event" in m]
        return [e for e in events if e["eventType"] == event_type]


def run_demo(
    folder: Path, prompt: str | None, env: dict[str, str] | None = None, out: str = "output"
) -> Run:
    """Run the agent in folder, the way the runner does; output goes to folder/out."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DESIGNRUN_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.getenv("PYTHONPATH")]))
    environ.update(
        DESIGNRUN_DEMO_DELAY="0",
        DESIGNRUN_OUTPUT_DIR=str(folder / out),
        DESIGNRUN_RUN_ID="3f2b9c1e-0000-4000-8000-000000000001",
    )
    if prompt is not None:
        environ["DESIGNRUN_PROMPT"] = prompt
    environ.update(env or {})
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "designrun.agents.demo"],
        cwd=folder,
        env=environ,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, folder / out)


@pytest.fixture(scope="module")
def bakery(tmp_path_factory: pytest.TempPathFactory) -> Run:
    # A nested output folder that does not exist yet: the agent creates it.
    return run_demo(tmp_path_factory.mktemp("bakery"), BAKERY, out="runs/one/output")


@pytest.fixture(scope="module")
def ocean(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A second prompt, whose later lines try to pass for protocol lines when echoed."""
    forged = '::designrun:: {"artifact": {"path": "../../etc/passwd", "artifactType": "x"}}'
    prompt = f"Bold dark landing page for an ocean research lab\n{forged}\n::designrun:: {{}}"
    return run_demo(tmp_path_factory.mktemp("ocean"), prompt)


def test_run_exits_0_and_writes_the_five_files(bakery: Run) -> None:
    assert bakery.returncode == 0, bakery.stderr
    assert sorted(p.name for p in bakery.output_dir.iterdir()) == sorted(FILES)
    assert bakery.stderr == ""


class _HtmlChecker(HTMLParser):
    """Records the doctype, links and title, and checks that elements nest properly."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.doctype = ""
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.title = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "link":
            self.links.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}> at {self.getpos()}")

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title":
            self.title += data


def test_index_html_is_well_formed_html5_and_links_the_stylesheet(bakery: Run) -> None:
    checker = _HtmlChecker()
    checker.feed((bakery.output_dir / "index.html").read_text("utf-8"))
    checker.close()
    assert checker.doctype.lower() == "doctype html"
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    assert {"rel": "stylesheet", "href": "styles.css"} in checker.links
    assert checker.title == "Cozy neighbourhood bakery in Lisbon"
    for tag in ("html", "head", "body", "main", "h1", "footer"):
        assert checker.tags.count(tag) == 1, tag


def test_styles_css_holds_the_palette_and_scales_as_custom_properties(bakery: Run) -> None:
    css = (bakery.output_dir / "styles.css").read_text("utf-8")
    system = json.loads((bakery.output_dir / "design-system.json").read_text("utf-8"))
    assert f"--color-background: {system['palette']['colors']['background']['hex']};" in css
    assert f"--color-on-primary: {system['palette']['colors']['onPrimary']['hex']};" in css
    for name in ("--step-0:", "--step-5:", "--space-md:", "--font-heading:", "--radius:"):
        assert name in css, name
    assert css.count("{") == css.count("}")


def test_design_system_json_has_palette_type_scale_spacing_fonts_and_seed(bakery: Run) -> None:
    system = json.loads((bakery.output_dir / "design-system.json").read_text("utf-8"))
    assert system["prompt"] == BAKERY
    assert len(system["seed"]) == 16
    colors = system["palette"]["colors"]
    assert {"background", "surface", "text", "muted", "primary", "accent"} <= colors.keys()
    assert all(len(c["hex"]) == 7 and c["hex"].startswith("#") for c in colors.values())
    scale = system["typeScale"]
    assert scale["base"] in (16, 17, 18) and scale["ratio"] > 1
    assert [s["step"] for s in scale["steps"]] == list(range(-2, 6))
    assert system["spacing"]["unit"] > 0 and len(system["spacing"]["steps"]) >= 5
    assert {"heading", "body", "mono"} == system["fonts"].keys()
    assert system["traits"]["hueSource"] == "keyword 'bakery'"


def test_body_text_contrast_is_at_least_aa_and_every_pair_passes(bakery: Run) -> None:
    system = json.loads((bakery.output_dir / "design-system.json").read_text("utf-8"))
    checks = {(c["foreground"], c["background"]): c for c in system["palette"]["contrast"]}
    assert checks["text", "background"]["ratio"] >= 4.5
    assert all(c["passes"] and c["ratio"] >= c["minimum"] for c in checks.values()), checks


def test_preview_png_opens_at_1200_by_800_without_metadata(bakery: Run) -> None:
    with Image.open(bakery.output_dir / "preview.png") as image:
        assert (image.format, image.size, image.mode) == ("PNG", (1200, 800), "RGB")
        image.load()
        assert not getattr(image, "text", {}), image.info  # no tEXt chunks, so no timestamps


def test_report_md_quotes_the_prompt_and_lists_palette_and_contrast(bakery: Run) -> None:
    report = (bakery.output_dir / "report.md").read_text("utf-8")
    system = json.loads((bakery.output_dir / "design-system.json").read_text("utf-8"))
    assert report.startswith("# Cozy neighbourhood bakery in Lisbon")
    assert f"> {BAKERY}" in report
    assert system["palette"]["colors"]["primary"]["hex"] in report
    assert "| text | background | body text |" in report
    assert all(f"`{name}`" in report for name in FILES)


def test_protocol_lines_parse_and_progress_rises_to_1(bakery: Run) -> None:
    protocol_lines = [line for line in bakery.stdout.splitlines() if line.startswith("::")]
    assert len(bakery.messages) == len(protocol_lines)
    progress = bakery.progress()
    assert progress[0] == 0.0 and progress[-1] == 1.0
    assert progress == sorted(progress), progress
    assert len(progress) >= 5
    assert bakery.messages[-1] == {"progress": 1.0}


def test_one_tool_use_event_and_one_artifact_per_file(bakery: Run) -> None:
    uses = bakery.events("agent.tool_use")
    assert [u["metadata"]["input"]["path"] for u in uses] == FILES
    assert all(u["metadata"]["tool"] == "write_file" for u in uses)
    assert uses[0]["message"] == "write_file design-system.json"

    artifacts = bakery.artifacts()
    assert [a["path"] for a in artifacts] == FILES
    types = {a["path"]: (a["artifactType"], a["contentType"]) for a in artifacts}
    assert types["index.html"] == ("source", "text/html")
    assert types["preview.png"] == ("preview", "image/png")
    for item in artifacts:
        data = (bakery.output_dir / item["path"]).read_bytes()
        assert item["metadata"]["sha256"] == hashlib.sha256(data).hexdigest(), item["path"]
    assert len(bakery.events("agent.plan")) == 1


def test_plain_lines_tell_a_person_what_is_happening(bakery: Run) -> None:
    text = "\n".join(bakery.plain_lines)
    assert "Choosing a palette for “Cozy neighbourhood bakery in Lisbon”" in text
    assert "Writing index.html" in text
    assert "Done: 5 files" in text


def test_same_prompt_gives_byte_identical_files(bakery: Run, tmp_path: Path) -> None:
    again = run_demo(tmp_path, BAKERY, {"DESIGNRUN_RUN_ID": "another-run"})
    assert again.returncode == 0, again.stderr
    for name in FILES:
        first = (bakery.output_dir / name).read_bytes()
        assert (again.output_dir / name).read_bytes() == first, name


def test_different_prompts_give_different_palettes(bakery: Run, ocean: Run) -> None:
    assert ocean.returncode == 0, ocean.stderr

    def palette(run: Run) -> dict[str, Any]:
        system = json.loads((run.output_dir / "design-system.json").read_text("utf-8"))
        return {k: v["hex"] for k, v in system["palette"]["colors"].items()}

    assert palette(ocean) != palette(bakery)
    for name in FILES:
        assert (ocean.output_dir / name).read_bytes() != (bakery.output_dir / name).read_bytes()


def test_fail_marker_exits_3_after_some_steps_with_an_error(tmp_path: Path) -> None:
    failed = run_demo(tmp_path, "a bakery site [fail]")
    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    assert "[fail]" in failed.stderr and failed.stderr.startswith("error: ")
    progress = failed.progress()
    assert 0 < progress[-1] < 1, progress
    assert [a["path"] for a in failed.artifacts()] == ["design-system.json"]
    assert not (failed.output_dir / "index.html").exists()


def test_a_prompt_cannot_forge_protocol_lines(ocean: Run) -> None:
    assert ocean.returncode == 0, ocean.stderr
    assert [a["path"] for a in ocean.artifacts()] == FILES
    progress = ocean.progress()
    assert progress == sorted(progress) and progress.count(1.0) == 1, progress
    assert all(not line.startswith("::") for line in ocean.plain_lines)


def test_missing_prompt_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main({"DESIGNRUN_OUTPUT_DIR": "never-created"}) == 2
    captured = capsys.readouterr()
    assert "DESIGNRUN_PROMPT is not set" in captured.err
    assert captured.out == ""
    assert not Path("never-created").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DESIGNRUN_PROMPT": "   "}, "DESIGNRUN_PROMPT is empty"),
        ({"DESIGNRUN_CONFIG": "{not json"}, "DESIGNRUN_CONFIG is not valid JSON"),
        ({"DESIGNRUN_CONFIG": "[1, 2]"}, "DESIGNRUN_CONFIG must be a JSON object"),
        ({"DESIGNRUN_DEMO_DELAY": "soon"}, "DESIGNRUN_DEMO_DELAY must be a number"),
        ({"DESIGNRUN_DEMO_DELAY": "-1"}, "DESIGNRUN_DEMO_DELAY must be 0 or more"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main({"DESIGNRUN_PROMPT": "a bakery", **env}) == demo.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_empty_config_and_defaults_are_accepted() -> None:
    settings = demo.read_settings({"DESIGNRUN_PROMPT": "p", "DESIGNRUN_CONFIG": ""})
    assert settings.config == {}
    assert settings.output_dir == Path("output")
    assert settings.delay == demo.DEFAULT_DELAY
    assert settings.run_id is None


def test_default_pacing_takes_a_few_seconds_in_all(tmp_path: Path) -> None:
    """Counted, not timed: the pauses of a default run add up to a few seconds."""
    environ = {"DESIGNRUN_PROMPT": "calm ocean lab", "DESIGNRUN_OUTPUT_DIR": str(tmp_path)}
    settings = demo.read_settings(environ)
    pauses: list[float] = []
    out = io.StringIO()
    assert demo.run(settings, out, io.StringIO(), sleep=pauses.append) == 0
    assert 3.5 <= sum(pauses) <= 6.0, pauses
    assert len(pauses) >= 5


def test_agent_modules_import_only_the_standard_library_and_pillow() -> None:
    allowed = set(sys.stdlib_module_names) | {"PIL", "__future__"}
    for path in AGENTS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in allowed or name.startswith("designrun.agents")
                assert ok, f"{path.name} imports {name}"
