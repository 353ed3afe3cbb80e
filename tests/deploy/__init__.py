"""Deployment artefacts (Dockerfile, compose, Kubernetes) checked statically against schemas and the code."""
