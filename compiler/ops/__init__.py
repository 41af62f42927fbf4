"""Op definitions; importing this package registers every op (see README.md here)."""
