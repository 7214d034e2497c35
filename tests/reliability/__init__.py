"""Reliability and security tests: crash safety, concurrency, hostile input, hostile code, HTTP abuse."""
