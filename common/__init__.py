"""The ground floor shared by the apps; imports no app."""
