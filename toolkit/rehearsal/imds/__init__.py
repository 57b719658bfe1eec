"""A local EC2 instance metadata service for tests, the interruption drill and rehearsing hooks."""
