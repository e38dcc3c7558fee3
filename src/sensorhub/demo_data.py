"""Demo tenant data for ``sensorhub demo``: a farm and a greenhouse with 13 months of 10-minute readings.

Idempotent: entities are created once; each series only receives the points after its latest stored
timestamp, so a second run adds just the readings since the first (and never duplicates). Values are
synthetic but plausible: seasonal and daily cycles, slow "weather" drift, rain events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.entities.models import Entity
from sensorhub.timeseries.service import bulk_insert, get_or_create_series

STEP_US = 600 * 1_000_000  # a reading every 10 minutes
HISTORY_DAYS = 396  # 13 months
DAY_US = 86_400 * 1_000_000
SEED = 20260101

F64 = npt.NDArray[np.float64]
Signal = Callable[["Ctx"], F64]


@dataclass
class Ctx:
    """Time axis and helpers for one series' generator."""

    ts: npt.NDArray[np.int64]
    rng: np.random.Generator

    @property
    def days(self) -> F64:
        return self.ts / DAY_US

    def seasonal(self, lag_days: float = 0.0) -> F64:
        """+1 in mid-July, -1 in mid-January (northern hemisphere)."""
        return np.cos(2 * math.pi * ((self.days - lag_days) % 365.25 - 196) / 365.25)

    def daily(self, peak_hour: float = 15.0) -> F64:
        """+1 at ``peak_hour`` UTC, -1 twelve hours later."""
        return np.cos(2 * math.pi * ((self.days % 1.0) * 24 - peak_hour) / 24)

    def drift(self, every_hours: float, scale: float = 1.0) -> F64:
        """Smooth random variation: normal knots every ``every_hours``, linearly interpolated."""
        knot_us = int(every_hours * 3_600_000_000)
        k0 = int(self.ts[0] // knot_us) - 1
        k1 = int(self.ts[-1] // knot_us) + 2
        knots = np.arange(k0, k1, dtype=np.int64) * knot_us
        vals = self.rng.normal(0.0, scale, len(knots))
        return np.interp(self.ts.astype(np.float64), knots.astype(np.float64), vals)

    def noise(self, scale: float) -> F64:
        return self.rng.normal(0.0, scale, len(self.ts))


def _temperature(c: Ctx) -> F64:
    return 10 + 9 * c.seasonal() + (4 + 2 * c.seasonal()) * c.daily() + c.drift(6, 2.5) + c.noise(0.2)


def _humidity(c: Ctx) -> F64:
    return np.clip(74 - 14 * c.daily() - 6 * c.seasonal() + c.drift(6, 7) + c.noise(1), 18, 100)


def _wind(c: Ctx) -> F64:
    return np.clip(np.exp(1.0 + c.drift(4, 0.6)) + 0.8 * c.daily(14) + c.noise(0.4), 0, None)


def _rain(c: Ctx) -> F64:
    # Rain where a slow random field crosses a threshold; mm per 10 minutes.
    field = c.drift(3, 1.0) - 0.2 * c.seasonal()
    return np.clip(field - 1.4, 0, None)  # about 800 mm a year


def _pressure(c: Ctx) -> F64:
    return 1013 + c.drift(36, 7) + c.drift(6, 1.5) + c.noise(0.1)


def _soil_moisture(c: Ctx) -> F64:
    return np.clip(31 - 7 * c.seasonal(15) + c.drift(48, 4) + c.drift(6, 1) + c.noise(0.3), 5, 55)


def _soil_temperature(c: Ctx) -> F64:
    return 11 + 8 * c.seasonal(20) + 1.5 * c.daily(18) + c.drift(24, 1) + c.noise(0.1)


def _gh_temperature(c: Ctx) -> F64:
    return 21 + 1.5 * c.seasonal() + 3.5 * c.daily(14) + c.drift(12, 0.8) + c.noise(0.15)


def _gh_humidity(c: Ctx) -> F64:
    return np.clip(68 - 8 * c.daily(14) + c.drift(12, 4) + c.noise(0.8), 35, 98)


def _co2(c: Ctx) -> F64:
    # Plants draw CO2 down in daylight; it builds up overnight.
    return np.clip(620 - 190 * c.daily(13) + c.drift(12, 40) + c.noise(8), 380, 1400)


# attribute -> (unit code, generator, decimals)
WEATHER: dict[str, tuple[str, Signal, int]] = {
    "temperature": ("CEL", _temperature, 2),
    "relativeHumidity": ("P1", _humidity, 1),
    "windSpeed": ("MTS", _wind, 2),
    "precipitation": ("MMT", _rain, 1),
    "atmosphericPressure": ("A97", _pressure, 1),
}
SOIL: dict[str, tuple[str, Signal, int]] = {
    "soilMoisture": ("P1", _soil_moisture, 1),
    "soilTemperature": ("CEL", _soil_temperature, 2),
}
GREENHOUSE: dict[str, tuple[str, Signal, int]] = {
    "temperature": ("CEL", _gh_temperature, 2),
    "relativeHumidity": ("P1", _gh_humidity, 1),
    "co2": ("59", _co2, 0),
}

FARM_ORIGIN = (8.54, 47.37)  # lon, lat
CROPS = ("wheat", "maize", "barley", "rapeseed", "sugarbeet", "potato")
N_PARCELS = 12
N_STATIONS = 4
N_SOIL = 20
N_GREENHOUSE = 6


def _parcel(i: int) -> dict[str, Any]:
    row, col = divmod(i, 4)
    w, h = 0.004, 0.0025  # degrees; roughly 300 m x 280 m
    x0, y0 = FARM_ORIGIN[0] + col * (w + 0.0004), FARM_ORIGIN[1] + row * (h + 0.0004)
    ring = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h], [x0, y0]]
    area = round(w * 111_320 * math.cos(math.radians(y0)) * h * 110_570 / 10_000, 2)
    return {
        "id": f"urn:ngsi-ld:AgriParcel:parcel-{i + 1:02d}",
        "type": "AgriParcel",
        "name": {"type": "Property", "value": f"Parcel {i + 1}"},
        "cropType": {"type": "Property", "value": CROPS[i % len(CROPS)]},
        "area": {"type": "Property", "value": area, "unitCode": "HAR"},
        "location": {"type": "Polygon", "coordinates": [ring]},
    }


def _point(i: int, dx: float, dy: float) -> dict[str, Any]:
    return {
        "type": "Point",
        "coordinates": [round(FARM_ORIGIN[0] + dx * i, 6), round(FARM_ORIGIN[1] + dy, 6)],
    }


def _devices() -> list[tuple[str, dict[str, Any], dict[str, tuple[str, Signal, int]]]]:
    """(workspace slug, entity, series spec) for every demo entity."""
    out: list[tuple[str, dict[str, Any], dict[str, tuple[str, Signal, int]]]] = []
    for i in range(N_PARCELS):
        out.append(("farm", _parcel(i), {}))
    for i in range(1, N_STATIONS + 1):
        out.append(
            (
                "farm",
                {
                    "id": f"urn:ngsi-ld:WeatherObserved:station-{i}",
                    "type": "WeatherObserved",
                    "name": {"type": "Property", "value": f"Weather station {i}"},
                    "location": _point(i, 0.005, 0.012),
                },
                WEATHER,
            )
        )
    for i in range(1, N_SOIL + 1):
        parcel = f"urn:ngsi-ld:AgriParcel:parcel-{(i - 1) % N_PARCELS + 1:02d}"
        soil = _sensor(f"soil-{i:02d}", f"Soil probe {i}", SOIL, _point(i, 0.0008, 0.002), parcel)
        out.append(("farm", soil, SOIL))
    for i in range(1, N_GREENHOUSE + 1):
        greenhouse = _sensor(
            f"greenhouse-{i:02d}", f"Greenhouse sensor {i}", GREENHOUSE, _point(i, 0.0002, -0.004)
        )
        out.append(("greenhouse", greenhouse, GREENHOUSE))
    return out


def _sensor(
    name: str,
    title: str,
    spec: dict[str, tuple[str, Signal, int]],
    location: dict[str, Any],
    parcel: str = "",
) -> dict[str, Any]:
    """A sensor ``Device`` measuring the attributes of ``spec``, in ``parcel`` when it stands in one."""
    device: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Device:{name}",
        "type": "Device",
        "name": {"type": "Property", "value": title},
        "category": {"type": "Property", "value": "sensor"},
        "controlledProperty": {"type": "Property", "value": list(spec)},
    }
    if parcel:
        device["refAgriParcel"] = {"type": "Relationship", "object": parcel}
    return {**device, "location": location}


def _iso_us(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def seed(session: Session, org: Organisation, workspaces: dict[str, Workspace]) -> dict[str, int]:
    """Create the demo entities (once) and bring their series up to now. Returns counts for the banner."""
    from sensorhub.entities.normalize import normalize_entity

    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    end = now_us - now_us % STEP_US  # the last whole 10 minutes
    start = end - HISTORY_DAYS * DAY_US
    # tenancy: the demo seeds its own organisation
    existing = {e.entity_id: e for e in session.scalars(select(Entity).where(Entity.org_id == org.id))}
    created = points = 0
    for n, (ws_slug, body, spec) in enumerate(_devices()):
        entity = existing.get(body["id"])
        if entity is None:
            data = normalize_entity(body)
            entity = Entity(
                entity_id=data.entity_id,
                org_id=org.id,
                workspace_id=workspaces[ws_slug].id,
                type=data.type,
                name=data.name,
                attrs=data.attrs,
                location=data.location,
            )
            session.add(entity)
            session.flush()
            created += 1
        latest: dict[str, Any] = {}
        for k, (attr, (unit, gen, decimals)) in enumerate(spec.items()):
            series = get_or_create_series(session, entity, attr, unit)
            first = start if series.last_ts is None else max(start, int(series.last_ts) + STEP_US)
            if first <= end:
                ts = np.arange(first, end + 1, STEP_US, dtype=np.int64)
                values = np.round(
                    gen(Ctx(ts, np.random.default_rng([SEED, n, k, first // STEP_US]))), decimals
                )
                accepted, _ = bulk_insert(session, series.id, ts, values)
                points += accepted
                last_ts, last_value = int(ts[-1]), float(values[-1])
            elif series.last_ts is not None and series.last_value is not None:
                last_ts, last_value = int(series.last_ts), float(series.last_value)
            else:
                continue
            latest[attr] = {
                "type": "Property",
                "value": last_value,
                "unitCode": unit,
                "observedAt": _iso_us(last_ts),
            }
        if latest:
            entity.attrs = {**entity.attrs, **latest}
    session.flush()
    return {"entities": len(existing) + created, "new readings": points}
