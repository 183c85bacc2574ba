"""In-memory adapters: the second implementation each port's contract suite runs against."""
