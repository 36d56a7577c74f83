"""The run's whole configuration: every episode family's settings added to the shared schema in Hydra's store, and
the checks across keys and layers that run before anything starts."""
