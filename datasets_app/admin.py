from django.contrib import admin

from .models import Dataset, Image, ImageClass, Upload

admin.site.register(Dataset)
admin.site.register(ImageClass)
admin.site.register(Upload)
admin.site.register(Image)
