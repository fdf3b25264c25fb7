"""Authentication: runner tokens, passwords, server-side sessions, blueprint guards."""
