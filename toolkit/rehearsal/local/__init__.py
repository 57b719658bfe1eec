"""The local target: an embedded AWS emulator (moto server) on 127.0.0.1, managed per project."""
