"""Values made safe for files people open in spreadsheets."""

from __future__ import annotations

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> str:
    """The value as CSV cell text; formula-like text gets a leading ' (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
