"""Regression tests for the attacks of the hostile review (issue #12), against real processes."""
