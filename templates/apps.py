from django.apps import AppConfig


class MessageTemplatesConfig(AppConfig):
    # "templates" would read as Django's own template machinery in settings and errors.
    name = "templates"
    label = "message_templates"
    verbose_name = "Message templates"
