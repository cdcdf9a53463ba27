"""Fails unless /app/count.txt holds the number of words of /app/poem.txt."""

from pathlib import Path

expected = len(Path("/app/poem.txt").read_text().split())
written = Path("/app/count.txt").read_text().strip()
assert written == str(expected), f"count.txt says {written!r}, the poem has {expected} words"
print("count ok")
