from . import views

# Not namespaced: the pages and templates name it "signup", beside Django's "login" and "logout".
urlpatterns = views.urlpatterns
