"""Whole scenarios: real agents beside real services, the incident, the container, the pod, faults all at once."""
