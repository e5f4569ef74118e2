from django.core.management.base import BaseCommand

from tracking.eta_services import eta_model_refit


class Command(BaseCommand):
    help = "Refit the ETA model on the completed deliveries now (beat also does it every ETA_REFIT_SECONDS)."

    def handle(self, *args, **options) -> None:
        fit = eta_model_refit()
        self.stdout.write(
            self.style.SUCCESS(f"ETA model refit: {fit.deliveries} deliveries, {fit.samples} track samples.")
        )
        if fit.deliveries == 0 or not fit.params.get("pace_s_per_m"):
            self.stdout.write("Too little history: the documented defaults stay in use (see tracking/eta.py).")
