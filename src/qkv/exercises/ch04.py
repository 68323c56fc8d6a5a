"""Exercises of chapter 04 (filled in by the chapter)."""
