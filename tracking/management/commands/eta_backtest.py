import math

from django.core.management.base import BaseCommand, CommandParser

from tracking.eta_backtest import BASELINE_SPEED_MPS, ErrorSummary, eta_backtest
from tracking.eta_services import HISTORY_LIMIT, deliveries_history, local_tz


def _minutes(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds / 60:6.2f} min"


class Command(BaseCommand):
    help = (
        "Replay held-out completed deliveries (the newest --test-fraction): fit the ETA model on the older "
        "ones, predict each held-out delivery at dispatch and at every point of its ride, and print the mean "
        "and p90 absolute error of the model beside a naive baseline (straight-line distance at a fixed speed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=HISTORY_LIMIT, help="newest completed deliveries to use")
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--check", action="store_true", help="exit 1 unless the model beats the baseline")

    def handle(self, *args, limit: int, test_fraction: float, check: bool, **options) -> None:
        history = deliveries_history(limit=limit)
        if len(history) < 2:
            self.stderr.write("Not enough completed deliveries; generate some with `manage.py simulate --history 200`.")
            raise SystemExit(1)
        report = eta_backtest(history, tz=local_tz(), test_fraction=test_fraction)
        self.stdout.write(
            f"ETA backtest: trained on {report.train_deliveries} deliveries, "
            f"tested on {report.test_deliveries} held-out deliveries ({report.model.count} predictions)"
        )
        self.stdout.write(f"{'':<34}{'mean abs error':>16}{'p90 abs error':>16}")
        rows: list[tuple[str, ErrorSummary]] = [
            ("learned model", report.model),
            (f"baseline ({BASELINE_SPEED_MPS * 3.6:.0f} km/h straight line)", report.baseline),
        ]
        for name, summary in rows:
            self.stdout.write(f"{name:<34}{_minutes(summary.mean_seconds):>16}{_minutes(summary.p90_seconds):>16}")
        better = (
            report.model.mean_seconds < report.baseline.mean_seconds
            and report.model.p90_seconds < report.baseline.p90_seconds
        )
        self.stdout.write(
            self.style.SUCCESS("The learned model beats the baseline.")
            if better
            else self.style.WARNING("The learned model does NOT beat the baseline.")
        )
        if check and not better:
            raise SystemExit(1)
