# shellcheck shell=bash
# scripts/lib/pki.sh: sourced by scan.sh, and by scripts/bench/bench.py through `bash -c`. After
# `ringtls pki DIR`, adds server certificates signed by the same root: an RSA-2048 one
# (DIR/server-rsa.pem, DIR/server-rsa.key), for the rows and scans that need an RSA server key,
# and ECDSA P-256 ones for other names (DIR/STEM.pem, DIR/STEM.key), for the benchmark's
# passthrough rows, whose client asks for a name routed by SNI. The caller defines die().

rsa_server_cert() {
    local pki=$1 days=$2
    cat > "$pki/server-rsa.ext" << 'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
EXT
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/server-rsa.key" -subj "/CN=localhost" \
        -out "$pki/server-rsa.csr" 2> /dev/null
    openssl x509 -req -in "$pki/server-rsa.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$pki/server-rsa.ext" \
        -out "$pki/server-rsa.pem" 2> /dev/null
    openssl verify -CAfile "$pki/ca.pem" "$pki/server-rsa.pem" > /dev/null ||
        die "the RSA server certificate does not verify against ca.pem"
}

# ecdsa_server_cert DIR DAYS STEM NAME: DIR/STEM.pem and DIR/STEM.key, ECDSA P-256 like
# `ringtls pki`'s own server certificate (so that a row using it pays the same signature), with
# the one SAN DNS:NAME.
ecdsa_server_cert() {
    local pki=$1 days=$2 stem=$3 name=$4
    cat > "$pki/$stem.ext" << EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$name
EXT
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$stem.key" \
        -subj "/CN=$name" -out "$pki/$stem.csr" 2> /dev/null
    openssl x509 -req -in "$pki/$stem.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$pki/$stem.ext" \
        -out "$pki/$stem.pem" 2> /dev/null
    openssl verify -CAfile "$pki/ca.pem" "$pki/$stem.pem" > /dev/null ||
        die "the $name server certificate ($stem.pem) does not verify against ca.pem"
}
