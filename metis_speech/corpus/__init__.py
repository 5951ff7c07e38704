"""Synthetic multi-speaker corpus for the five Metis tasks, made offline (``metis make-corpus``)."""
