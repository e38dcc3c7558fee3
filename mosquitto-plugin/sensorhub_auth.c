/*
 * sensorhub_auth: a Mosquitto 2.0 plugin (plugin API v5) that lets sensorhub authenticate and
 * authorise every client. It implements no part of MQTT: Mosquitto does all of that; this plugin only
 * answers Mosquitto's questions by asking sensorhub over HTTP (libcurl, JSON with cJSON).
 *
 *   MOSQ_EVT_BASIC_AUTH  CONNECT: POST {url}/internal/mqtt/auth. The sensorhub service client
 *                        (service_username + service_password options) is accepted locally.
 *   MOSQ_EVT_ACL_CHECK   publish / subscribe / delivery: POST {url}/internal/mqtt/acl, answers cached
 *                        per client (at most CACHE_SLOTS topics per client, each for at most the
 *                        seconds sensorhub allows, cache_seconds option as the upper bound).
 *   MOSQ_EVT_MESSAGE     a device's message on sensorhub/... is moved to
 *                        sensorhub-ingest/{credential id}/{received µs}/... : only the sensorhub bridge
 *                        reads those, so subscribers never get a device's unvalidated message, and the
 *                        bridge knows which credential published it and when Mosquitto received it.
 *                        The message carries the publisher's client id as the MQTT 5 user property
 *                        sensorhub-client (one a client set itself is removed), so the bridge can
 *                        have the client disconnected when sensorhub refuses the message.
 *                        QoS 1 and 2 (qos1_store option, on by default): first stored through
 *                        POST {url}/internal/mqtt/ingest, which this callback waits for — Mosquitto
 *                        sends the PUBACK (PUBREC) only after it returns, so an acknowledged message is
 *                        stored. Refused, or no answer: the callback fails and Mosquitto does not
 *                        acknowledge the message. Stored: it goes on to the bridge with the user
 *                        property sensorhub-stored (a client's own is removed), which the bridge only
 *                        acknowledges.
 *   MOSQ_EVT_CONTROL     $CONTROL/sensorhub/v1 (service client only): {"command":"recheck"} drops every
 *                        cached answer and kicks the clients sensorhub no longer accepts;
 *                        {"command":"kick","client":id,"credential":id,"reason":text} kicks that client
 *                        (if it is still connected with that credential): sensorhub refused its message.
 *   MOSQ_EVT_TICK        kicks clients whose token has expired.
 *   MOSQ_EVT_DISCONNECT  forgets the client.
 *
 * Options (mosquitto.conf, after "plugin .../sensorhub_auth.so"):
 *   plugin_opt_url               sensorhub's base URL, e.g. http://127.0.0.1:8000
 *   plugin_opt_secret_file       a file holding SENSORHUB_MQTT_PLUGIN_SECRET (or plugin_opt_secret)
 *   plugin_opt_service_username  the bridge's username (default sensorhub-bridge); its password is the secret
 *   plugin_opt_cache_seconds     upper bound of an ACL answer's age (default 10; 0 disables the cache)
 *   plugin_opt_timeout_ms        HTTP timeout per question (default 2000); no answer = refused
 *   plugin_opt_qos1_store        true (default): QoS 1 and 2 messages are stored before Mosquitto
 *                                acknowledges them; false: every message is stored later by the bridge
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#define CACHE_SLOTS 256
#define CONTROL_TOPIC "$CONTROL/sensorhub/v1"
#define CLIENT_PROPERTY "sensorhub-client"
#define STORED_PROPERTY "sensorhub-stored"
#define INGEST_ROOT "sensorhub-ingest/"
#define MAX_BODY (64 * 1024)

struct acl_entry {
	char *topic;
	int access;
	bool allow;
	time_t until;
};

struct client_rec {
	struct mosquitto *client;
	char *credential;
	time_t expires; /* 0: never */
	bool service;
	struct acl_entry cache[CACHE_SLOTS];
	int next_slot;
	struct client_rec *next;
};

static mosquitto_plugin_id_t *plugin_id;
static char *opt_url;
static char *opt_secret;
static char *opt_service_username;
static long opt_cache_seconds = 10;
static long opt_timeout_ms = 2000;
static bool opt_qos1_store = true;
static CURL *curl;
static struct curl_slist *json_headers;
static struct curl_slist *raw_headers;
static struct client_rec *clients;
static long long last_received_us;

/* --- small helpers ------------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

static bool secure_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char diff = (unsigned char)(la != lb);
	for(i = 0; i < la && i < lb; i++) diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static struct client_rec *find_client(const struct mosquitto *client)
{
	struct client_rec *c;
	for(c = clients; c; c = c->next){
		if(c->client == client) return c;
	}
	return NULL;
}

static void clear_cache(struct client_rec *c)
{
	int i;
	for(i = 0; i < CACHE_SLOTS; i++){
		free(c->cache[i].topic);
		c->cache[i].topic = NULL;
	}
	c->next_slot = 0;
}

static void forget_client(const struct mosquitto *client)
{
	struct client_rec **p = &clients, *c;
	while((c = *p)){
		if(c->client == client){
			*p = c->next;
			clear_cache(c);
			free(c->credential);
			free(c);
			return;
		}
		p = &c->next;
	}
}

struct buffer {
	char *data;
	size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *b = userdata;
	size_t n = size * nmemb;
	char *grown;
	if(b->len + n > MAX_BODY) return 0;
	grown = realloc(b->data, b->len + n + 1);
	if(!grown) return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* POST body (len bytes) to url; the parsed JSON answer, or NULL (sensorhub unreachable, not 200, not
 * JSON): every caller treats NULL as "refused". path names the endpoint in the log (url may hold a
 * query string, never logged). */
static cJSON *post(const char *path, const char *url, struct curl_slist *hdrs, const void *body, long len)
{
	struct buffer answer = {NULL, 0};
	long status = 0;
	CURLcode rc;
	cJSON *parsed = NULL;

	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, len);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
	rc = curl_easy_perform(curl);
	if(rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if(rc != CURLE_OK || status != 200){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "sensorhub_auth: %s failed (%s, HTTP %ld): refusing",
				path, rc == CURLE_OK ? "answered" : curl_easy_strerror(rc), status);
	}else if(answer.data){
		parsed = cJSON_Parse(answer.data);
	}
	free(answer.data);
	return parsed;
}

/* POST the JSON request to {url}{path}. */
static cJSON *ask(const char *path, cJSON *request)
{
	char url[1024];
	char *body;
	cJSON *parsed;

	body = cJSON_PrintUnformatted(request);
	if(!body) return NULL;
	snprintf(url, sizeof(url), "%s%s", opt_url, path);
	parsed = post(path, url, json_headers, body, (long)strlen(body));
	free(body);
	return parsed;
}

/* Append "?name=value" or "&name=value" (value URL-encoded) to the URL *url; false when out of memory. */
static bool add_param(char **url, const char *name, const char *value)
{
	char *escaped = curl_easy_escape(curl, value, 0);
	size_t len = strlen(*url), n;
	char *grown = NULL;
	if(escaped){
		n = strlen(name) + strlen(escaped) + 2;
		grown = realloc(*url, len + n + 1);
	}
	if(grown){
		snprintf(grown + len, n + 1, "%c%s=%s", strchr(grown, '?') ? '&' : '?', name, escaped);
		*url = grown;
	}
	curl_free(escaped);
	return grown != NULL;
}

/* Store a QoS 1/2 message before Mosquitto acknowledges it: POST {url}/internal/mqtt/ingest with the
 * payload as the body. True only when sensorhub answered that it is stored (committed). */
static bool store_now(const struct client_rec *c, const char *clientid, const struct mosquitto_evt_message *ed,
		long long received_us)
{
	const char *path = "/internal/mqtt/ingest";
	char received[32];
	char *url = malloc(strlen(opt_url) + strlen(path) + 1);
	cJSON *answer = NULL;
	const cJSON *reason;
	bool stored;

	snprintf(received, sizeof(received), "%lld", received_us);
	if(url){
		strcpy(url, opt_url);
		strcat(url, path);
	}
	if(url && add_param(&url, "credential", c->credential) && add_param(&url, "received_us", received)
			&& add_param(&url, "clientid", clientid) && add_param(&url, "topic", ed->topic)){
		answer = post(path, url, raw_headers, ed->payloadlen ? ed->payload : "", (long)ed->payloadlen);
	}
	free(url);
	stored = answer && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "stored"));
	if(answer && !stored){
		reason = cJSON_GetObjectItemCaseSensitive(answer, "reason");
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "sensorhub_auth: refusing a QoS %d message of client %s "
				"(credential %s), not acknowledged: %.200s", ed->qos, clientid, c->credential,
				cJSON_IsString(reason) ? reason->valuestring : "refused");
	}
	cJSON_Delete(answer);
	return stored;
}

static bool answer_allows(const cJSON *answer)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "allow"));
}

static const char *access_name(int access)
{
	switch(access){
		case MOSQ_ACL_READ: return "read";
		case MOSQ_ACL_WRITE: return "write";
		case MOSQ_ACL_SUBSCRIBE: return "subscribe";
		case MOSQ_ACL_UNSUBSCRIBE: return "unsubscribe";
		default: return "other";
	}
}

static bool is_service(const struct mosquitto *client)
{
	const char *user = mosquitto_client_username(client);
	struct client_rec *c = find_client(client);
	/* The record says the client proved the secret; a persistent session's queued deliveries (client
	 * offline: no record) are checked by username, which only the service may carry (see basic_auth). */
	if(c) return c->service;
	return user && !strcmp(user, opt_service_username);
}

/* --- events -------------------------------------------------------------------------------------- */

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct client_rec *c;
	cJSON *request, *answer;
	const cJSON *cred, *expires;
	const char *address;
	bool allow;
	(void)event; (void)userdata;

	forget_client(ed->client); /* a reused connection object starts with nothing */
	if(!ed->username || !ed->password) return MOSQ_ERR_AUTH;
	if(!strcmp(ed->username, opt_service_username)){
		if(!secure_equal(ed->password, opt_secret)) return MOSQ_ERR_AUTH;
		c = calloc(1, sizeof(*c));
		if(!c) return MOSQ_ERR_NOMEM;
		c->client = ed->client;
		c->service = true;
		c->next = clients;
		clients = c;
		return MOSQ_ERR_SUCCESS;
	}
	address = mosquitto_client_address(ed->client);
	request = cJSON_CreateObject();
	cJSON_AddStringToObject(request, "username", ed->username);
	cJSON_AddStringToObject(request, "password", ed->password);
	cJSON_AddStringToObject(request, "clientid", mosquitto_client_id(ed->client) ? mosquitto_client_id(ed->client) : "");
	cJSON_AddStringToObject(request, "address", address ? address : "");
	answer = ask("/internal/mqtt/auth", request);
	cJSON_Delete(request);
	allow = answer && answer_allows(answer);
	cred = cJSON_GetObjectItemCaseSensitive(answer, "credential");
	if(allow && !cJSON_IsString(cred)) allow = false;
	if(allow){
		c = calloc(1, sizeof(*c));
		if(!c){
			cJSON_Delete(answer);
			return MOSQ_ERR_NOMEM;
		}
		c->client = ed->client;
		c->credential = dup_str(cred->valuestring);
		expires = cJSON_GetObjectItemCaseSensitive(answer, "expires");
		c->expires = cJSON_IsNumber(expires) ? (time_t)expires->valuedouble : 0;
		c->next = clients;
		clients = c;
	}
	cJSON_Delete(answer);
	return allow ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
}

/* What the ACL and message callbacks return for a QoS 1/2 message sensorhub did not accept or did not
 * store: Mosquitto must not acknowledge it. Mosquitto (2.0.11) answers MOSQ_ERR_ACL_DENIED with a PUBACK of reason 0x87 (not
 * authorised) to an MQTT 5 client, which stays connected — but to an MQTT 3.1.1 client, which has no
 * negative PUBACK, with a plain, successful one. So a 3.1.1 client gets another failure, which makes
 * Mosquitto close its connection without any PUBACK (as the embedded broker does). */
static int refuse(const struct mosquitto *client)
{
	return mosquitto_client_protocol_version(client) == 5 ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_PAYLOAD_SIZE;
}

/* The answer to a write (publish) check that is not a plain yes. A QoS 0 message is just dropped (at
 * most once). A QoS 1/2 message must not be acknowledged as if it had been taken: refused by sensorhub,
 * refuse() (MQTT 5: PUBACK 0x87; MQTT 3.1.1: the connection closes, MQTT-3.3.5-2); sensorhub did not
 * answer (down, too slow), the connection closes without any PUBACK for both versions, so the device
 * sends the message again when it reconnects. */
static int refuse_write(const struct mosquitto_evt_acl_check *ed, bool answered)
{
	const char *id = mosquitto_client_id(ed->client);
	if(ed->qos == 0) return MOSQ_ERR_ACL_DENIED;
	if(answered) return refuse(ed->client);
	mosquitto_log_printf(MOSQ_LOG_WARNING, "sensorhub_auth: no answer on the publish of client %s to %.200s: "
			"closing its connection without acknowledging the QoS %d message", id ? id : "?", ed->topic, ed->qos);
	return MOSQ_ERR_UNKNOWN;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct client_rec *c;
	struct acl_entry *e;
	cJSON *request, *answer;
	const cJSON *cache;
	const char *user;
	time_t now = time(NULL);
	long seconds;
	bool allow, answered;
	int i;
	(void)event; (void)userdata;

	if(is_service(ed->client)) return MOSQ_ERR_SUCCESS;
	if(!strncmp(ed->topic, "$CONTROL/", 9) || !strncmp(ed->topic, INGEST_ROOT, strlen(INGEST_ROOT))){
		return ed->access == MOSQ_ACL_WRITE ? refuse_write(ed, true) : MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	c = find_client(ed->client);
	if(!c && ed->access == MOSQ_ACL_WRITE){
		/* Only a connected client publishes; a write check without one is Mosquitto sending a will
		 * after the client has gone (MOSQ_EVT_DISCONNECT came first). Wills would reach subscribers
		 * without being stored, so they are refused. */
		return MOSQ_ERR_ACL_DENIED;
	}
	if(c){
		for(i = 0; i < CACHE_SLOTS; i++){
			e = &c->cache[i];
			if(e->topic && e->access == ed->access && e->until > now && !strcmp(e->topic, ed->topic)){
				if(e->allow) return MOSQ_ERR_SUCCESS;
				return ed->access == MOSQ_ACL_WRITE ? refuse_write(ed, true) : MOSQ_ERR_ACL_DENIED;
			}
		}
	}
	user = mosquitto_client_username(ed->client);
	if(!user) return MOSQ_ERR_ACL_DENIED;
	request = cJSON_CreateObject();
	cJSON_AddStringToObject(request, "username", user);
	cJSON_AddStringToObject(request, "clientid", mosquitto_client_id(ed->client) ? mosquitto_client_id(ed->client) : "");
	cJSON_AddStringToObject(request, "address", mosquitto_client_address(ed->client) ? mosquitto_client_address(ed->client) : "");
	cJSON_AddStringToObject(request, "topic", ed->topic);
	cJSON_AddStringToObject(request, "access", access_name(ed->access));
	if(ed->access == MOSQ_ACL_READ && ed->payload && ed->payloadlen < MAX_BODY){
		/* A delivered value's payload carries its timestamp, which time-window grants decide on. */
		char *text = strndup(ed->payload, ed->payloadlen);
		if(text) cJSON_AddStringToObject(request, "payload", text);
		free(text);
	}
	answer = ask("/internal/mqtt/acl", request);
	cJSON_Delete(request);
	allow = answer && answer_allows(answer);
	cache = cJSON_GetObjectItemCaseSensitive(answer, "cache_seconds");
	seconds = cJSON_IsNumber(cache) ? (long)cache->valuedouble : 0;
	if(seconds > opt_cache_seconds) seconds = opt_cache_seconds;
	answered = answer != NULL;
	cJSON_Delete(answer);
	if(c && seconds > 0){
		e = &c->cache[c->next_slot];
		c->next_slot = (c->next_slot + 1) % CACHE_SLOTS;
		free(e->topic);
		e->topic = dup_str(ed->topic);
		e->access = ed->access;
		e->allow = allow;
		e->until = now + seconds;
	}
	if(allow) return MOSQ_ERR_SUCCESS;
	return ed->access == MOSQ_ACL_WRITE ? refuse_write(ed, answered) : MOSQ_ERR_ACL_DENIED;
}

/* Append a copy of one PUBLISH property to *out (the property types a PUBLISH may carry). */
static int copy_property(mosquitto_property **out, const mosquitto_property *p)
{
	int id = mosquitto_property_identifier(p);
	char *name = NULL, *value = NULL;
	void *data = NULL;
	uint32_t u32;
	uint16_t u16;
	uint8_t u8;
	int rc;

	switch(id){
		case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
			mosquitto_property_read_byte(p, id, &u8, false);
			return mosquitto_property_add_byte(out, id, u8);
		case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
			mosquitto_property_read_int32(p, id, &u32, false);
			return mosquitto_property_add_int32(out, id, u32);
		case MQTT_PROP_TOPIC_ALIAS:
			mosquitto_property_read_int16(p, id, &u16, false);
			return mosquitto_property_add_int16(out, id, u16);
		case MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
			mosquitto_property_read_varint(p, id, &u32, false);
			return mosquitto_property_add_varint(out, id, u32);
		case MQTT_PROP_CORRELATION_DATA:
			mosquitto_property_read_binary(p, id, &data, &u16, false);
			rc = mosquitto_property_add_binary(out, id, data, u16);
			mosquitto_free(data);
			return rc;
		case MQTT_PROP_USER_PROPERTY:
			mosquitto_property_read_string_pair(p, id, &name, &value, false);
			rc = name && value ? mosquitto_property_add_string_pair(out, id, name, value) : MOSQ_ERR_NOMEM;
			mosquitto_free(name);
			mosquitto_free(value);
			return rc;
		default: /* content type, response topic */
			mosquitto_property_read_string(p, id, &value, false);
			rc = value ? mosquitto_property_add_string(out, id, value) : MOSQ_ERR_NOMEM;
			mosquitto_free(value);
			return rc;
	}
}

/* Replace the message's properties by a copy without any CLIENT_PROPERTY or STORED_PROPERTY user
 * property (a client can neither name another nor have its message taken as stored) plus
 * CLIENT_PROPERTY naming the publisher and, when sensorhub has stored it, STORED_PROPERTY. */
static int stamp_client(mosquitto_property **props, const char *clientid, bool stored)
{
	mosquitto_property *out = NULL;
	const mosquitto_property *p;
	char *name, *value;
	int rc = MOSQ_ERR_SUCCESS;

	for(p = *props; p && rc == MOSQ_ERR_SUCCESS; p = mosquitto_property_next(p)){
		if(mosquitto_property_identifier(p) == MQTT_PROP_USER_PROPERTY){
			name = value = NULL;
			mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false);
			bool ours = name && (!strcmp(name, CLIENT_PROPERTY) || !strcmp(name, STORED_PROPERTY));
			mosquitto_free(name);
			mosquitto_free(value);
			if(ours) continue;
		}
		rc = copy_property(&out, p);
	}
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_property_add_string_pair(&out, MQTT_PROP_USER_PROPERTY, CLIENT_PROPERTY, clientid);
	if(rc == MOSQ_ERR_SUCCESS && stored) rc = mosquitto_property_add_string_pair(&out, MQTT_PROP_USER_PROPERTY, STORED_PROPERTY, "1");
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_property_free_all(&out);
		return rc;
	}
	mosquitto_property_free_all(props);
	*props = out;
	return MOSQ_ERR_SUCCESS;
}


static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct client_rec *c;
	struct timeval tv;
	long long now_us;
	size_t len;
	char *topic;
	const char *id;
	bool stored;
	int rc;
	(void)event; (void)userdata;

	c = find_client(ed->client);
	if(c && c->service) return MOSQ_ERR_SUCCESS; /* sensorhub's own: live values */
	if(!c || !c->credential) return MOSQ_ERR_ACL_DENIED;
	id = mosquitto_client_id(ed->client);
	/* The receive time in microseconds, strictly increasing (Mosquitto handles one message at a time):
	 * two plain numbers of a device never share a timestamp, which would make the second a duplicate. */
	gettimeofday(&tv, NULL);
	now_us = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
	if(now_us <= last_received_us) now_us = last_received_us + 1;
	last_received_us = now_us;
	stored = ed->qos > 0 && opt_qos1_store;
	if(stored && !store_now(c, id ? id : "", ed, now_us)) return refuse(ed->client);
	rc = stamp_client(&ed->properties, id ? id : "", stored);
	if(rc != MOSQ_ERR_SUCCESS) return rc;
	len = strlen(INGEST_ROOT) + strlen(c->credential) + 32 + strlen(ed->topic);
	topic = mosquitto_malloc(len);
	if(!topic) return MOSQ_ERR_NOMEM;
	snprintf(topic, len, "%s%s/%lld/%s", INGEST_ROOT, c->credential, now_us, ed->topic);
	mosquitto_free(ed->topic);
	ed->topic = topic;
	ed->retain = false; /* a device's retained message would otherwise be kept for the bridge */
	return MOSQ_ERR_SUCCESS;
}

static void kick(struct client_rec *c, const char *why)
{
	const char *id = mosquitto_client_id(c->client);
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "sensorhub_auth: disconnecting client %s (credential %s): %s",
			id ? id : "?", c->credential ? c->credential : "-", why);
	if(id) mosquitto_kick_client_by_clientid(id, false);
}

static void recheck(void)
{
	struct client_rec *c;
	cJSON *request, *list, *item, *answer;
	const cJSON *kicks, *k;
	const char *user, *id, *address;

	request = cJSON_CreateObject();
	list = cJSON_AddArrayToObject(request, "clients");
	for(c = clients; c; c = c->next){
		clear_cache(c);
		if(c->service) continue;
		user = mosquitto_client_username(c->client);
		id = mosquitto_client_id(c->client);
		address = mosquitto_client_address(c->client);
		if(!user || !id) continue;
		item = cJSON_CreateObject();
		cJSON_AddStringToObject(item, "clientid", id);
		cJSON_AddStringToObject(item, "username", user);
		cJSON_AddStringToObject(item, "address", address ? address : "");
		cJSON_AddItemToArray(list, item);
	}
	answer = ask("/internal/mqtt/recheck", request);
	cJSON_Delete(request);
	if(!answer) return; /* caches are dropped: every next check asks sensorhub again */
	kicks = cJSON_GetObjectItemCaseSensitive(answer, "kick");
	cJSON_ArrayForEach(k, kicks){
		if(!cJSON_IsString(k)) continue;
		for(c = clients; c; c = c->next){
			id = mosquitto_client_id(c->client);
			if(!c->service && id && !strcmp(id, k->valuestring)){
				kick(c, "sensorhub no longer accepts its credential");
				break;
			}
		}
	}
	cJSON_Delete(answer);
}

/* The bridge's "kick": sensorhub refused a message of that client. The credential must match too, so
 * a message queued while the bridge was down cannot disconnect a later client reusing the id. */
static void kick_refused(const cJSON *command)
{
	const cJSON *client = cJSON_GetObjectItemCaseSensitive(command, "client");
	const cJSON *credential = cJSON_GetObjectItemCaseSensitive(command, "credential");
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(command, "reason");
	struct client_rec *c;
	const char *id;
	char why[300];

	if(!cJSON_IsString(client) || !cJSON_IsString(credential)) return;
	snprintf(why, sizeof(why), "sensorhub refused its message: %.200s",
			cJSON_IsString(reason) ? reason->valuestring : "-");
	for(c = clients; c; c = c->next){
		id = mosquitto_client_id(c->client);
		if(!c->service && id && c->credential && !strcmp(id, client->valuestring)
				&& !strcmp(c->credential, credential->valuestring)){
			kick(c, why);
			return;
		}
	}
}

static int on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	cJSON *command;
	const cJSON *name;
	(void)event; (void)userdata;

	if(!is_service(ed->client)) return MOSQ_ERR_ACL_DENIED;
	command = cJSON_ParseWithLength(ed->payload, ed->payloadlen);
	name = cJSON_GetObjectItemCaseSensitive(command, "command");
	if(cJSON_IsString(name) && !strcmp(name->valuestring, "recheck")){
		recheck();
	}else if(cJSON_IsString(name) && !strcmp(name->valuestring, "kick")){
		kick_refused(command);
	}else{
		mosquitto_log_printf(MOSQ_LOG_WARNING, "sensorhub_auth: unknown control command ignored");
	}
	cJSON_Delete(command);
	return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	struct client_rec *c, *next;
	time_t now = time(NULL);
	(void)event; (void)event_data; (void)userdata;
	for(c = clients; c; c = next){
		next = c->next; /* a kick may forget the record */
		if(!c->service && c->expires && c->expires <= now){
			c->expires = 0;
			kick(c, "its token has expired");
		}
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	(void)event; (void)userdata;
	forget_client(ed->client);
	return MOSQ_ERR_SUCCESS;
}

/* --- plugin API v5 --------------------------------------------------------------------------------- */

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;
	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static char *read_secret(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[512];
	size_t n;
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_ERR, "sensorhub_auth: cannot read plugin_opt_secret_file %s: %s "
				"(Mosquitto reads it as the user it runs as)", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while(n > 0 && (buf[n-1] == '\n' || buf[n-1] == '\r' || buf[n-1] == ' ')) buf[--n] = '\0';
	return n ? strdup(buf) : NULL;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	int i;
	char auth[600];
	(void)userdata;

	plugin_id = identifier;
	for(i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "url")) opt_url = dup_str(opts[i].value);
		else if(!strcmp(opts[i].key, "secret")) opt_secret = dup_str(opts[i].value);
		else if(!strcmp(opts[i].key, "secret_file")) opt_secret = read_secret(opts[i].value);
		else if(!strcmp(opts[i].key, "service_username")) opt_service_username = dup_str(opts[i].value);
		else if(!strcmp(opts[i].key, "cache_seconds")) opt_cache_seconds = atol(opts[i].value);
		else if(!strcmp(opts[i].key, "timeout_ms")) opt_timeout_ms = atol(opts[i].value);
		else if(!strcmp(opts[i].key, "qos1_store") && (!strcmp(opts[i].value, "true") || !strcmp(opts[i].value, "false"))){
			opt_qos1_store = !strcmp(opts[i].value, "true");
		}else if(!strcmp(opts[i].key, "qos1_store")){
			mosquitto_log_printf(MOSQ_LOG_ERR, "sensorhub_auth: plugin_opt_qos1_store must be true or false");
			return MOSQ_ERR_INVAL;
		}
		else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "sensorhub_auth: unknown option plugin_opt_%s", opts[i].key);
			return MOSQ_ERR_INVAL;
		}
	}
	if(!opt_service_username) opt_service_username = strdup("sensorhub-bridge");
	if(!opt_url || !opt_secret || strlen(opt_secret) < 16 || strlen(opt_secret) > 500){
		mosquitto_log_printf(MOSQ_LOG_ERR, "sensorhub_auth: plugin_opt_url and plugin_opt_secret_file "
				"(a secret of 16 to 500 characters, SENSORHUB_MQTT_PLUGIN_SECRET) are required");
		return MOSQ_ERR_INVAL;
	}
	if(opt_cache_seconds < 0) opt_cache_seconds = 0;
	if(curl_global_init(CURL_GLOBAL_DEFAULT)) return MOSQ_ERR_UNKNOWN;
	curl = curl_easy_init();
	if(!curl) return MOSQ_ERR_UNKNOWN;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", opt_secret);
	json_headers = curl_slist_append(json_headers, "Content-Type: application/json");
	json_headers = curl_slist_append(json_headers, auth);
	raw_headers = curl_slist_append(raw_headers, "Content-Type: application/octet-stream");
	raw_headers = curl_slist_append(raw_headers, auth);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, opt_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, opt_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

	mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
	mosquitto_log_printf(MOSQ_LOG_INFO, "sensorhub_auth: asking %s", opt_url);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata; (void)opts; (void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_TICK, on_tick, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	while(clients) forget_client(clients->client);
	curl_slist_free_all(json_headers);
	curl_slist_free_all(raw_headers);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	free(opt_url); free(opt_secret); free(opt_service_username);
	return MOSQ_ERR_SUCCESS;
}
