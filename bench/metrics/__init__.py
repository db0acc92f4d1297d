"""Evaluation: CL, CAM-COS and ATT-COS, the extended metrics, and the plugin conformance checks."""
