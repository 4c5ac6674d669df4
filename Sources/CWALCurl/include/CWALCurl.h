// libcurl for the alert channels (SMTP with STARTTLS): curl_easy_setopt is variadic, which Swift cannot call, so
// these prefixed wrappers fix its argument type per option kind. Imported by WALAlerts only.
#ifndef CWALCURL_H
#define CWALCURL_H

#include <curl/curl.h>

typedef size_t (*walctl_curl_read_callback)(char *buffer, size_t size, size_t count, void *context);

CURLcode walctl_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode walctl_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode walctl_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode walctl_curl_setopt_read_function(CURL *handle, walctl_curl_read_callback callback);

#endif
