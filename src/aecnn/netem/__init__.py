"""Network emulation for tests and measurements: shaped links between network namespaces
(``tc``), delay lines and link probes. Testing infrastructure, not needed to deploy."""
