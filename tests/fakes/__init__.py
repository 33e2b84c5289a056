"""Test doubles for SaaS systems Persona talks to (only these are faked; everything else is real)."""
