"""Exercises of chapter 03 (filled in by the chapter)."""
