"""Composite (multi-head) actions, masks and multi-agent layouts."""
