"""rlm_core."""
