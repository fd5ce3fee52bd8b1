"""Mooring: the canyon observations (OceanSITES/CSV, QC), targets, cascading events.

May import: nothing else in cascadia (only the package version); learning and run read it.
"""
