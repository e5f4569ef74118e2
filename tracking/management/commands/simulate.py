"""Riders, customers and the warehouse, simulated through the real HTTP API with JWT.

    python manage.py simulate [--riders N] [--orders N] [--speed X] [--base-url URL]
    python manage.py simulate --history N [--speed X]

Live mode only talks HTTP (it can drive any deployment); `--history` writes
completed deliveries in the past straight through the services, so the ETA
model has something to learn from and `eta_backtest` something to replay.
"""

import datetime as dt
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from queue import Queue
from typing import Any

import httpx
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.demo import DEFAULT_PASSWORD
from orders.demo import WAREHOUSE as DEMO_WAREHOUSE
from orders.models import Order, OrderStatus
from tracking.management.simulation import (
    TICK_SECONDS,
    Incidents,
    destination_near,
    history_generate,
    path_length_m,
    position_along,
    street_path,
    street_speed_mps,
    trip_plan,
    warehouse_plan,
)


class ApiError(Exception):
    pass


class Api:
    """One account's HTTP session: logs in with /api/auth/token/ and again when the access token expires."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._client = httpx.Client(base_url=base_url, timeout=20)
        self._access: str | None = None
        # Several simulated orders share an account (warehouse1, customers).
        self._lock = threading.Lock()

    def _login(self) -> None:
        response = self._client.post("/api/auth/token/", json={"username": self.username, "password": self._password})
        if response.status_code != 200:
            raise ApiError(f"{self.username} cannot log in: {response.status_code} {response.text[:200]}")
        self._access = response.json()["access"]

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        with self._lock:
            for attempt in range(4):
                if self._access is None:
                    self._login()
                try:
                    response = self._client.request(
                        method, path, headers={"Authorization": f"Bearer {self._access}"}, **kwargs
                    )
                except httpx.TransportError:
                    if attempt == 3:
                        raise
                    time.sleep(1 + attempt)
                    continue
                if response.status_code == 401 and attempt == 0:
                    self._access = None
                    continue
                # Like a phone app, try a server hiccup again (points are idempotent by client_id).
                if response.status_code >= 500 and attempt < 3:
                    time.sleep(1 + attempt)
                    continue
                break
        if response.status_code not in expect:
            raise ApiError(f"{method} {path} as {self.username}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None


def _results(payload: Any) -> list[dict]:
    return payload["results"] if isinstance(payload, dict) and "results" in payload else payload


class Simulation:
    def __init__(
        self,
        *,
        base_url: str,
        riders: int,
        customers: int,
        first_rider: int = 1,
        orders: int,
        speed: float,
        password: str,
        incidents: Incidents,
        seed: int | None,
        log: Callable[[str], None],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.speed = speed
        self.orders = orders
        self.incidents = incidents
        self.rng = random.Random(seed)  # a simulation, not cryptography
        self._log = log
        self._log_lock = threading.Lock()
        self.warehouse_api = Api(self.base_url, "warehouse1", password)
        self.customer_apis = [Api(self.base_url, f"customer{n}", password) for n in range(1, customers + 1)]
        self.rider_apis = {
            f"rider{n}": Api(self.base_url, f"rider{n}", password) for n in range(first_rider, first_rider + riders)
        }
        self.rider_positions: dict[str, tuple[float, float] | None] = dict.fromkeys(self.rider_apis)
        self.warehouse_position = (float(DEMO_WAREHOUSE["lat"]), float(DEMO_WAREHOUSE["lon"]))
        self.free_riders: Queue[str] = Queue()
        for name in self.rider_apis:
            self.free_riders.put(name)

    def log(self, message: str) -> None:
        with self._log_lock:
            self._log(f"{dt.datetime.now():%H:%M:%S} {message}")

    def sleep(self, simulated_seconds: float) -> None:
        time.sleep(max(0.0, simulated_seconds / self.speed))

    def wait_for_server(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/api/products/", timeout=5).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"{self.base_url} did not answer within {timeout:.0f}s")
            time.sleep(1)

    def run(self) -> None:
        products = _results(self.customer_apis[0].call("GET", "/api/products/"))
        self.skus = [product["sku"] for product in products]
        self._finish_leftovers()
        threads: list[threading.Thread] = []
        for number in itertools.count(1):
            if self.orders and number > self.orders:
                break
            rider = self.free_riders.get()
            thread = threading.Thread(target=self._order_safely, args=(number, rider), daemon=True)
            thread.start()
            threads.append(thread)
            self.sleep(self.rng.uniform(5, 30))
        for thread in threads:
            thread.join()
        self.log(f"done: {self.orders} orders")

    def _finish_leftovers(self) -> None:
        """Orders a stopped simulation left on the road are handed over first, as a rider back at work would."""
        for name in self.rider_apis:
            self._hand_over_all(name, "left from an earlier run")

    def _hand_over_all(self, name: str, why: str) -> None:
        api = self.rider_apis[name]
        for order in _results(api.call("GET", "/api/rider/orders/")):
            api.call("POST", f"/api/rider/orders/{order['id']}/delivered/")
            self.log(f"{name} handed over order {order['id'][:8]} {why}")

    def _order_safely(self, number: int, rider: str) -> None:
        try:
            self._order(number, rider)
        except Exception as error:  # noqa: BLE001  (one failed order must not stop the simulation)
            self.log(f"order #{number}: {error}")
        finally:
            self.free_riders.put(rider)

    def _order(self, number: int, rider: str) -> None:
        rng = random.Random(self.rng.random())
        customer = self.customer_apis[number % len(self.customer_apis)]
        # Orders go to the nearest warehouse: place them around the one the last order named.
        destination = destination_near(self.warehouse_position, rng)
        order = customer.call(
            "POST",
            "/api/orders/",
            json={
                "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in rng.sample(self.skus, k=2)],
                "delivery_address": f"上海市徐汇区模拟路 {rng.randint(1, 999)} 号",
                "delivery_lat": round(destination[0], 6),
                "delivery_lon": round(destination[1], 6),
            },
        )
        order_id = order["id"]
        warehouse = (float(order["warehouse"]["lat"]), float(order["warehouse"]["lon"]))
        self.warehouse_position = warehouse
        self.log(f"order #{number} {order_id[:8]} created by {customer.username}")
        self.sleep(rng.uniform(10, 60))
        customer.call("POST", f"/api/orders/{order_id}/pay/")
        self.log(f"order #{number} {order_id[:8]} paid")

        for step, wait_s in warehouse_plan(rng):
            self.sleep(wait_s)
            if step == "dispatch":
                self._dispatch(order_id, rider)
            else:
                self.warehouse_api.call("POST", f"/api/warehouse/orders/{order_id}/stage/", json={"stage": step})
                self.log(f"order #{number} {order_id[:8]} {step}")

        rider_api = self.rider_apis[rider]
        assigned = {item["id"]: item for item in _results(rider_api.call("GET", "/api/rider/orders/"))}
        destination = _coordinates(assigned.get(order_id)) or destination
        plan = trip_plan(
            start=warehouse,
            destination=destination,
            hour=dt.datetime.now().hour,
            rng=rng,
            speed=self.speed,
            incidents=self.incidents,
            force=self._showcase(number),
        )
        self.log(
            f"order #{number} {order_id[:8]} dispatched to {rider}: "
            f"{len(plan.points)} points, incidents: {', '.join(plan.incidents) or 'none'}"
        )
        self._ride(rider, [(p.at_s, p.lat, p.lon, p.offline) for p in plan.points], end_s=plan.deliver_s)
        rider_api.call("POST", f"/api/rider/orders/{order_id}/delivered/")
        self.log(f"order #{number} {order_id[:8]} delivered by {rider}")
        # A visitor on /warehouse/ may have given this rider an order too: it rode along, it is handed over.
        self._hand_over_all(rider, "dispatched to it from the warehouse page")
        # Back to the warehouse for the next order, on the map but not on any order.
        back = street_path(destination, warehouse, rng)
        street_speed = street_speed_mps(dt.datetime.now().hour)
        ride_s = path_length_m(back) / street_speed
        points = []
        at = 0.0
        while at < ride_s:
            lat, lon = position_along(back, at * street_speed)
            points.append((at, round(lat, 6), round(lon, 6), False))
            at += TICK_SECONDS
        self._ride(rider, points, end_s=ride_s)

    def _showcase(self, number: int) -> frozenset[str]:
        """The first orders each show one incident (if enabled at all), so a visitor sees alerts early."""
        showcase = {1: "detour", 2: "stall", 3: "offline"}.get(number)
        chances = {
            "detour": self.incidents.detour_chance,
            "stall": self.incidents.stall_chance,
            "offline": self.incidents.offline_chance,
        }
        return frozenset({showcase}) if showcase and chances[showcase] > 0 else frozenset()

    def _dispatch(self, order_id: str, rider: str) -> None:
        for attempt in range(5):
            try:
                self.warehouse_api.call("POST", f"/api/warehouse/orders/{order_id}/dispatch/", json={"rider": rider})
                return
            except ApiError:
                if attempt == 4:
                    raise
                time.sleep(3)

    def _ride(self, rider: str, points: list[tuple[float, float, float, bool]], *, end_s: float) -> None:
        """Post each point at its time; points in an offline gap go up together when the gap ends."""
        api = self.rider_apis[rider]
        started = time.monotonic()
        cached: list[dict] = []
        for at_s, lat, lon, offline in points:
            time.sleep(max(0.0, started + at_s / self.speed - time.monotonic()))
            cached.append(
                {
                    "client_id": uuid.uuid4().hex,
                    "lat": lat,
                    "lon": lon,
                    "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
                    "accuracy": 8.0,
                }
            )
            if offline:
                continue
            if len(cached) > 1:
                self.log(f"{rider} back online: uploading {len(cached)} cached points")
            for start in range(0, len(cached), 500):
                api.call("POST", "/api/rider/locations/", json={"points": cached[start : start + 500]})
            cached = []
        if cached:
            api.call("POST", "/api/rider/locations/", json={"points": cached})
        time.sleep(max(0.0, started + end_s / self.speed - time.monotonic()))


def _coordinates(order: dict | None) -> tuple[float, float] | None:
    """The destination as GET /api/rider/orders/ gives it (flat or nested)."""
    if not order:
        return None
    for source in (order, order.get("delivery") or {}):
        for lat_key, lon_key in (("delivery_lat", "delivery_lon"), ("lat", "lon")):
            if source.get(lat_key) is not None and source.get(lon_key) is not None:
                return float(source[lat_key]), float(source[lon_key])
    return None


class Command(BaseCommand):
    help = (
        "Simulate customers, warehouse1 and riders through the HTTP API (JWT), as real clients would; "
        "or, with --history N, write N completed deliveries in the past for the ETA model to learn from."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--riders", type=int, default=3, help="riders rider1..N (from seed_demo)")
        parser.add_argument("--customers", type=int, default=3, help="customers customer1..N (from seed_demo)")
        parser.add_argument(
            "--first-rider",
            type=int,
            default=1,
            help="simulate riders from riderK on (make run uses 2: rider1 is left to a visitor on /rider/)",
        )
        parser.add_argument("--orders", type=int, default=0, help="orders to deliver; 0 keeps going")
        parser.add_argument("--speed", type=float, default=1.0, help="time compression: 10 = ten times faster")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--password", default=DEFAULT_PASSWORD)
        parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the server to answer")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--stall-chance", type=float, default=Incidents.stall_chance)
        parser.add_argument("--detour-chance", type=float, default=Incidents.detour_chance)
        parser.add_argument("--offline-chance", type=float, default=Incidents.offline_chance)
        parser.add_argument(
            "--stall-seconds", type=float, default=Incidents.stall_seconds, help="wall-clock length of a stall"
        )
        parser.add_argument(
            "--offline-seconds",
            type=float,
            default=Incidents.offline_seconds[1],
            help="longest offline gap, wall-clock (gaps are 1/5 to all of it)",
        )
        parser.add_argument(
            "--history",
            type=int,
            default=None,
            metavar="N",
            help="instead: make sure at least N completed deliveries exist (written in the past), then exit",
        )

    def handle(self, *args, **options) -> None:
        if (
            options["speed"] <= 0
            or min(options["riders"], options["customers"], options["first_rider"]) < 1
            or options["orders"] < 0
        ):
            raise CommandError(
                "--speed must be positive, --riders, --customers and --first-rider at least 1, --orders not negative"
            )
        if options["history"] is not None:
            self._history(options["history"], speed=options["speed"])
            return
        # One line per request drowns the story the simulator tells.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        simulation = Simulation(
            base_url=options["base_url"],
            riders=options["riders"],
            customers=options["customers"],
            first_rider=options["first_rider"],
            orders=options["orders"],
            speed=options["speed"],
            password=options["password"],
            incidents=Incidents(
                stall_chance=options["stall_chance"],
                detour_chance=options["detour_chance"],
                offline_chance=options["offline_chance"],
                stall_seconds=options["stall_seconds"],
                offline_seconds=(options["offline_seconds"] / 5, options["offline_seconds"]),
            ),
            seed=options["seed"],
            log=lambda line: self.stdout.write(line),
        )
        self.stdout.write(f"Waiting for {simulation.base_url} ...")
        simulation.wait_for_server(options["wait"])
        self.stdout.write(
            f"Simulating {options['riders']} riders at speed {options['speed']:g} "
            f"({'endless' if not options['orders'] else options['orders']} orders) against {simulation.base_url}"
        )
        try:
            simulation.run()
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def _history(self, wanted: int, *, speed: float) -> None:
        from tracking.eta_services import eta_model_refit

        User = get_user_model()
        try:
            customer = User.objects.get(username="customer1")
            operator = User.objects.get(username="warehouse1")
            rider = User.objects.get(username="rider1")
        except User.DoesNotExist:
            raise CommandError("Demo accounts missing: run `manage.py seed_demo` first.") from None
        existing = Order.objects.filter(status=OrderStatus.COMPLETED).count()
        missing = max(0, wanted - existing)
        if missing:
            self.stdout.write(f"Writing {missing} completed deliveries in the past (speed {speed:g}) ...")
            history_generate(count=missing, customer=customer, operator=operator, rider=rider, speed=speed)
        fit = eta_model_refit()
        self.stdout.write(
            self.style.SUCCESS(
                f"{existing + missing} completed deliveries; "
                f"ETA model fitted on {fit.deliveries} ({fit.samples} samples)."
            )
        )
