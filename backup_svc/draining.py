"""Railway's draining time against the service's grace: how long running downloads really get.

On a redeploy Railway sends SIGTERM, then SIGKILL once the draining time is over
(RAILWAY_DEPLOYMENT_DRAINING_SECONDS; Railway's default is 0). gunicorn gives running downloads
GRACEFUL_TIMEOUT seconds after SIGTERM. A grace that outlasts the draining is a promise SIGKILL
breaks, so the grace in force ends DRAIN_MARGIN_S before the draining does, and a draining time too
short for GRACEFUL_TIMEOUT is said out loud at start-up and by `check`.
"""

from __future__ import annotations

from dataclasses import dataclass

VARIABLE = "RAILWAY_DEPLOYMENT_DRAINING_SECONDS"
# After the grace gunicorn cuts the transfers still running and exits; that must be over before SIGKILL.
DRAIN_MARGIN_S = 15
# Railway sets these in every deployment: their presence means the service runs there.
RAILWAY_MARKERS = ("RAILWAY_ENVIRONMENT_ID", "RAILWAY_SERVICE_ID", "RAILWAY_PROJECT_ID")


@dataclass(frozen=True)
class Draining:
    """The draining time (None: RAILWAY_DEPLOYMENT_DRAINING_SECONDS is not set) and whether this is Railway."""

    seconds: int | None = None
    on_railway: bool = False

    def grace_s(self, requested_s: int) -> int:
        """The grace in force: GRACEFUL_TIMEOUT, ending DRAIN_MARGIN_S before the draining does (at least 1 s)."""
        if self.seconds is None:
            return requested_s
        return max(1, min(requested_s, self.seconds - DRAIN_MARGIN_S))

    def warnings(self, requested_s: int) -> list[str]:
        """What to say when a redeploy would cut downloads sooner than GRACEFUL_TIMEOUT promises."""
        enough = requested_s + DRAIN_MARGIN_S
        if self.seconds is None:
            if not self.on_railway:
                return []
            return [
                f"{VARIABLE} is not set: unless this service's draining time is set another way, Railway's "
                f"default of 0 s cuts every running download at a redeploy; set it to {enough} or more "
                f"(docs/deploy-railway.md)"
            ]
        if self.seconds == 0:
            return [
                f"{VARIABLE}=0: a redeploy cuts every running download at once; set it to {enough} or more "
                f"to give downloads the GRACEFUL_TIMEOUT={requested_s} s they are promised"
            ]
        if self.seconds < enough:
            return [
                f"{VARIABLE}={self.seconds} is shorter than GRACEFUL_TIMEOUT={requested_s} plus "
                f"{DRAIN_MARGIN_S} s: running downloads get {self.grace_s(requested_s)} s after a redeploy "
                f"begins; set it to {enough} or more, or lower GRACEFUL_TIMEOUT"
            ]
        return []

    def describe(self, requested_s: int) -> str:
        """One line: the draining time and the grace in force."""
        grace = self.grace_s(requested_s)
        if self.seconds is None:
            where = "on Railway" if self.on_railway else "not on Railway"
            return f"{VARIABLE} not set ({where}); downloads get {grace} s after SIGTERM (GRACEFUL_TIMEOUT)"
        return (
            f"{self.seconds} s ({VARIABLE}); downloads get {grace} s after SIGTERM "
            f"(GRACEFUL_TIMEOUT={requested_s}, kept {DRAIN_MARGIN_S} s inside the draining)"
        )
