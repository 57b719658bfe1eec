"""Kubernetes side of spotkit: manifests for GPU spot pools (pure Python dicts), their validation,
and rendering to YAML files. No cdktn, no click: the stack config drives the builders."""
