"""Indirect personalization: recommenders, rating prediction, classification (survey §8.2)."""
