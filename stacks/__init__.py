"""Deployable compositions of spotkit constructs. Each stack takes one frozen config dataclass."""
