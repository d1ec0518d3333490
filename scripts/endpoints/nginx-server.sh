#!/bin/sh
# nginx serving QB_WWW as static files: HTTP/1.1 and HTTP/2 over TLS 1.3,
# HTTP/1.1 and HTTP/1.0 in cleartext (HTTP/1.0 over TLS too). Contract:
# docs/endpoints.md. The config is generated into QB_OUTPUT_DIR/nginx.conf;
# one process in the foreground (daemon off, master_process off), so SIGTERM
# to it is a fast shutdown; logs and temp files stay in QB_OUTPUT_DIR.
set -eu
export QB_WRAPPER="nginx-server"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_LISTEN_ADDR QB_PORT QB_WWW QB_OUTPUT_DIR
qb_protocol h2 h1.1-tls h1.0-tls h1.1 h1.0
# TCP: the harness sets the namespace's controller; any of them runs.
qb_cc_map "cubic=cubic newreno=reno bbr=bbr" >/dev/null
nginx=$(qb_program nginx /usr/sbin/nginx)

case $QB_PROTOCOL in
  h2)
    # nginx 1.22: "http2" on the listen line (no "http2 on;" before 1.25.1);
    # ALPN then offers h2 and http/1.1.
    listen="listen $QB_LISTEN_ADDR:$QB_PORT ssl http2;" ;;
  h1.1-tls | h1.0-tls)
    # No http2 on the listener: the ALPN picks http/1.1 (or http/1.0), never h2.
    listen="listen $QB_LISTEN_ADDR:$QB_PORT ssl;" ;;
  *)
    listen="listen $QB_LISTEN_ADDR:$QB_PORT;" ;;
esac
tls=""
case $QB_PROTOCOL in
  h2 | h1.1-tls | h1.0-tls)
    qb_need QB_CERT QB_KEY
    # Session tickets (nginx's default, key made at start) resume TLS 1.3
    # sessions; ssl_early_data accepts 0-RTT requests.
    tls="ssl_certificate $QB_CERT;
        ssl_certificate_key $QB_KEY;
        ssl_protocols TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:qb:10m;
        ssl_early_data on;" ;;
esac

o=$QB_OUTPUT_DIR
mkdir -p "$o/nginx-temp"
cat > "$o/nginx.conf" <<CONF
daemon off;
master_process off;
user root;
worker_processes 1;
pid $o/nginx.pid;
error_log $o/nginx-error.log warn;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    access_log $o/nginx-access.log;
    client_body_temp_path $o/nginx-temp/body;
    proxy_temp_path $o/nginx-temp/proxy;
    fastcgi_temp_path $o/nginx-temp/fastcgi;
    uwsgi_temp_path $o/nginx-temp/uwsgi;
    scgi_temp_path $o/nginx-temp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    server {
        $listen
        server_name _;
        $tls
        root $QB_WWW;
        location / { try_files \$uri =404; }
    }
}
CONF
# -e: errors before the config is read go here too, not to /var/log/nginx.
exec "$nginx" -p "$o" -e "$o/nginx-error.log" -c "$o/nginx.conf"
