"""Helpers shared by the test folders (on pytest's path as ``support``)."""
