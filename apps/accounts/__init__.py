"""Tenants (organisations), users and their per-tenant roles; login, logout and sign-up."""
