"""Coordinates of addresses and devices, and the distance between them.

The family picks the visit address on a map in the mini-program (``wx.chooseLocation``), which
gives GCJ-02 latitude/longitude; the nurse's phone reports its position (``wx.getLocation`` with
type ``gcj02``). Both are in the same datum, so their distance is computed directly; no outside
geocoding service is called. Distances: geopy's geodesic (Karney's algorithm on WGS-84)."""

from __future__ import annotations

from typing import Any

from geopy.distance import geodesic

from bot.errors import ApiError


class LocationError(ApiError):
    """A location that cannot be used (a 400); the message is Chinese."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "invalid_location", message)


def parse_location(value: Any, *, required: bool = True) -> dict[str, float] | None:
    """``{"latitude": …, "longitude": …}`` (optionally ``accuracy`` in metres) checked and normalised."""
    if value is None:
        if required:
            raise LocationError("请提供位置（latitude、longitude）")
        return None
    if not isinstance(value, dict):
        raise LocationError("位置应为 {latitude, longitude}")
    latitude, longitude = value.get("latitude"), value.get("longitude")
    for name, number, limit in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if isinstance(number, bool) or not isinstance(number, int | float) or not -limit <= number <= limit:
            raise LocationError(f"位置的 {name} 应为 -{limit} 到 {limit} 之间的数字")
    out = {"latitude": float(latitude), "longitude": float(longitude)}
    accuracy = value.get("accuracy")
    if accuracy is not None:
        if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0 <= accuracy <= 100_000:
            raise LocationError("定位精度 accuracy 应为 0 到 100000 之间的米数")
        out["accuracy"] = float(accuracy)
    return out


def distance_m(a: dict[str, float], b: dict[str, float]) -> float:
    """Geodesic distance in metres between two ``{latitude, longitude}``."""
    return geodesic((a["latitude"], a["longitude"]), (b["latitude"], b["longitude"])).meters
