"""The console for domain experts and compliance officers (issue 8)."""
