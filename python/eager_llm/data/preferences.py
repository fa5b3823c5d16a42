"""User preference text for the preference-conditioned search task (METHOD.md section 4)."""

from __future__ import annotations

from .readers import DataError, _int, _json_lines


def read_preferences(path: str) -> dict[int, str]:
    """A JSON-lines file of ``{"user": <1-based id>, "preference": "<text>"}`` objects, one per
    user; errors name the file and line (bad JSON, missing fields, a user given twice)."""
    preferences: dict[int, str] = {}
    for number, record in _json_lines(path):
        if not isinstance(record, dict) or "user" not in record or not str(record.get("preference") or "").strip():
            raise DataError(f"{path}:{number}: every record needs a user and a non-empty preference")
        user = _int(str(record["user"]), path, number, "user")
        if user in preferences:
            raise DataError(f"{path}:{number}: user {user} appears a second time")
        preferences[user] = str(record["preference"]).strip()
    return preferences
