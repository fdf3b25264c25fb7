"""Profiles and the seeded fault plan of ``designrun-runner-check``.

The plan decides, for the n-th request a runner makes to one endpoint (``status``, ``events``,
``artifacts``, ``token``), whether it gets a fault and which. The decision is a pure function of
the seed, the profile, the endpoint and n (plus a little state that is itself a function of the
earlier decisions: the rest of a 503 burst, the run of consecutive faults, the one refused
request), so the same seed replays the same faults for the same sequence of requests.

Each profile starts with a short *script* of faults, so that every kind is exercised early in
every run whatever the seed, then draws further faults at random with the profile's rate.
No endpoint gets more than ``max_consecutive`` faults in a row: a hostile network still lets a
correct runner through (a runner that retries at least that many times).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

LOST = "lost"  # the server committed the request, then the connection closed without an answer
UNAVAILABLE = "unavailable"  # 503, in bursts, without Retry-After (the runner backs off)
RATE_LIMITED = "rate_limited"  # 429 with Retry-After: the runner must wait that long
SLOW = "slow"  # the server handled it, the answer comes late
REFUSED = "refused"  # one 400 (single event or progress report): dropped, never retried

KINDS = (LOST, UNAVAILABLE, RATE_LIMITED, SLOW, REFUSED)
ENDPOINTS = ("status", "events", "artifacts", "token")

RETRY_AFTER_SECONDS = 1  # integer seconds: the header's delta-seconds form


@dataclass(frozen=True)
class Profile:
    """How hostile the network is; see PROFILES."""

    name: str
    rate: float  # probability of a random fault on a request past the script
    weights: dict[str, float]  # relative odds of each random fault kind
    script: dict[str, dict[int, str]]  # endpoint -> {request number (1-based): kind}
    burst: tuple[int, int]  # 503 burst length range (inclusive)
    slow: tuple[float, float]  # seconds an answer is held back
    max_consecutive: dict[str, int]  # per endpoint; "*" for the rest
    token_ttl: int  # RUNNER_TOKEN_TTL of the embedded server, seconds
    refuse_one: bool  # refuse one single-event request with 400
    description: str = ""

    def consecutive_limit(self, endpoint: str) -> int:
        return self.max_consecutive.get(endpoint, self.max_consecutive["*"])


_SCRIPT: dict[str, dict[int, str]] = {
    "events": {2: LOST, 4: UNAVAILABLE, 7: RATE_LIMITED, 9: SLOW, 11: LOST},
    "status": {1: LOST, 3: RATE_LIMITED, 4: UNAVAILABLE},
    "artifacts": {1: LOST, 2: UNAVAILABLE, 4: SLOW},
    "token": {1: UNAVAILABLE},
}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        rate=0.0,
        weights={},
        script={"events": {2: LOST, 3: UNAVAILABLE, 4: RATE_LIMITED}, "status": {1: LOST}},
        burst=(1, 1),
        slow=(0.2, 0.4),
        max_consecutive={"*": 1},
        token_ttl=3600,
        refuse_one=True,
        description="one fault of each basic kind early on; long-lived token",
    ),
    "standard": Profile(
        name="standard",
        rate=0.15,
        weights={LOST: 0.35, UNAVAILABLE: 0.25, RATE_LIMITED: 0.1, SLOW: 0.3},
        script=_SCRIPT,
        burst=(2, 3),
        slow=(0.2, 0.8),
        max_consecutive={"*": 3, "token": 1},
        token_ttl=4,
        refuse_one=True,
        description="every fault kind early, then a fault on about one request in seven; "
        "a 4 s token",
    ),
    "hostile": Profile(
        name="hostile",
        rate=0.75,
        weights={LOST: 0.35, UNAVAILABLE: 0.3, RATE_LIMITED: 0.1, SLOW: 0.25},
        script=_SCRIPT,
        burst=(2, 3),
        slow=(0.1, 0.5),
        max_consecutive={"*": 3, "token": 1},
        token_ttl=5,
        refuse_one=True,
        description="a fault on most requests (at most 3 in a row per endpoint); a 5 s token",
    ),
}


@dataclass(frozen=True)
class Fault:
    """What happens to one request."""

    kind: str
    retry_after: int | None = None  # 429: the Retry-After header, seconds
    delay: float = 0.0  # slow: seconds the answer is held back


@dataclass
class _EndpointState:
    count: int = 0
    burst_left: int = 0
    consecutive: int = 0


@dataclass
class FaultPlan:
    """The seeded plan; ``decide`` is called once per request, in arrival order per endpoint."""

    profile: Profile
    seed: int
    _state: dict[str, _EndpointState] = field(default_factory=dict)
    _refused: bool = False

    def decide(self, endpoint: str, refusable: bool = False) -> tuple[int, Fault | None]:
        """The request's number on its endpoint (1-based) and its fault, or None.

        ``refusable``: the request may be the refused one (a single event, or a progress-only
        status report: losing either is harmless, and a resend of it is unambiguous).
        """
        state = self._state.setdefault(endpoint, _EndpointState())
        state.count += 1
        number = state.count
        kind = self._kind(endpoint, number, state, refusable)
        if kind is None:
            state.consecutive = 0
            return number, None
        state.consecutive += 1
        rng = random.Random(f"{self.seed}:{endpoint}:{number}:detail")  # noqa: S311
        if kind == UNAVAILABLE and state.burst_left == 0:
            state.burst_left = rng.randint(*self.profile.burst)
        if kind == UNAVAILABLE:
            state.burst_left -= 1
        if kind == RATE_LIMITED:
            return number, Fault(kind, retry_after=RETRY_AFTER_SECONDS)
        if kind == SLOW:
            return number, Fault(kind, delay=round(rng.uniform(*self.profile.slow), 3))
        return number, Fault(kind)

    def _kind(
        self, endpoint: str, number: int, state: _EndpointState, refusable: bool
    ) -> str | None:
        if state.consecutive >= self.profile.consecutive_limit(endpoint):
            state.burst_left = 0
            return None
        if state.burst_left > 0:
            return UNAVAILABLE
        # The refused request: the first refusable one past the first. Never a batch: a
        # refused batch may rightly be split to find the bad event, which looks like a retry.
        if (
            self.profile.refuse_one
            and not self._refused
            and refusable
            and number >= 2
            and number not in self.profile.script.get(endpoint, {})
        ):
            self._refused = True
            return REFUSED
        scripted = self.profile.script.get(endpoint, {}).get(number)
        if scripted is not None:
            return scripted
        rng = random.Random(f"{self.seed}:{endpoint}:{number}")  # noqa: S311
        if not self.profile.weights or rng.random() >= self.profile.rate:
            return None
        kinds = sorted(self.profile.weights)
        return rng.choices(kinds, weights=[self.profile.weights[k] for k in kinds])[0]
