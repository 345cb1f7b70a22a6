"""The judgement: the running error bound (``bounds``), the comparison rows and the tolerance table
(``compare``), the classes (``classify``) and the one ``judge``.
"""
