"""Small helpers shared by every stage (progress reporting, file handling)."""
