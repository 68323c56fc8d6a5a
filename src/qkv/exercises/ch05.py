"""Exercises of chapter 05 (filled in by the chapter)."""
