"""Helpers shared by several test files, one module per role (test files import from here, never
from each other): ``cases`` hand-made cases and small candidates, ``checks`` the property check,
``report`` report records and fixtures, ``protocol`` a bpcheck/1 program that misbehaves on request."""
