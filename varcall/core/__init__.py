"""Shared types and file helpers: errors, regions, call inputs and parameters, CallSet,
atomic writes, index lookup. Imports nothing else from varcall."""
