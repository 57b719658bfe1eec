"""Rehearsal tools: the drills (training and serving), their workload and checkpoint protocol, the
goodput projection, and the emulators side by side: AWS (``local/``, moto server) and the metadata
services of AWS, GCP and Azure (``imds/``)."""
