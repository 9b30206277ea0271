"""Ensembles of the top trials' fold models and the submission zip: the ensemble issue."""
