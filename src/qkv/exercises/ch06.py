"""Exercises of chapter 06 (filled in by the chapter)."""
