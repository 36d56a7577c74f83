"""Episode families: one folder each (its episodes, config, checks and report section), listed in registry.py;
protocol.py is what every episode and family implements."""
