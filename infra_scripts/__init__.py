"""Provisioning, deployment and packaging scripts for AWS (run from the repository root)."""
