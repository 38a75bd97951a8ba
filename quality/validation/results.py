"""What validation returns: one CheckResult per check, the version's ValidationResult, and its report files."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CheckResult:
    name: str
    table: str
    critical: bool
    passed: bool
    details: str
    expectation: str = ""
    # The measure and the bound it was held to, where the check has one: a rate of bad rows against
    # its maximum ("max"), or a ratio against its minimum ("min"). The margin is how far from failing.
    observed: float | None = None
    limit: float | None = None
    bound: str | None = None

    @property
    def margin(self) -> float | None:
        """limit - observed for a maximum, observed - limit for a minimum: negative when failed."""
        if self.observed is None or self.limit is None:
            return None
        return self.limit - self.observed if self.bound == "max" else self.observed - self.limit


@dataclass
class ValidationResult:
    version: str
    valid: bool
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    judged: dict[str, dict[str, Any]] = field(default_factory=dict)  # per table: new_part.TablePart.to_dict()
    ge_results: list[dict] = field(default_factory=list, repr=False)  # GE's own JSON, written by write_report

    @property
    def checks_total(self) -> int:
        return len(self.checks)

    @property
    def checks_passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def checks_failed(self) -> int:
        return self.checks_total - self.checks_passed

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        """Critical failures first: they are why a version is rejected."""
        failed = sorted((c for c in self.checks if not c.passed), key=lambda c: not c.critical)
        return [{"table": c.table, "check": c.name, "details": c.details, "critical": c.critical,
                 "observed": c.observed, "limit": c.limit} for c in failed]

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "valid": self.valid, "checks_total": self.checks_total,
                           "checks_passed": self.checks_passed, "checks_failed": self.checks_failed,
                           "seconds": round(self.seconds, 2), "failed_checks": self.failed_checks,
                           "judged": self.judged, "checks": [asdict(c) for c in self.checks]}, indent=1, default=str)


def write_report(result: ValidationResult, out_dir: Path) -> Path:
    """validation.json (summary and every check) and ge_results.json (GE's own results)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "validation.json"
    path.write_text(result.to_json())
    if result.ge_results:
        (out_dir / "ge_results.json").write_text(json.dumps(result.ge_results, default=str))
    return path
