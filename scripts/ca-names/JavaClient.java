// One mutual-TLS request with Java's JSSE (SunJSSE), for scripts/ca-names-limits.py: prints the
// upstream's response and exits 0 when the handshake completes and the upstream answers, else
// prints the exception and exits 1. Run as `java JavaClient.java HOST PORT CA.pem CLIENT.pem
// CLIENT.key` (Java 11+ single-file launch); the key is PKCS#8 PEM (what `ringtls pki` writes).

import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.security.*;
import java.security.cert.*;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import javax.net.ssl.*;

public class JavaClient {
    static byte[] pemBody(String path) throws IOException {
        String text = Files.readString(Path.of(path));
        String b64 = text.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        return Base64.getDecoder().decode(b64);
    }

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = new FileInputStream(args[2])) {
            trust.setCertificateEntry("ca", cf.generateCertificate(in));
        }
        java.security.cert.Certificate client;
        try (InputStream in = new FileInputStream(args[3])) {
            client = cf.generateCertificate(in);
        }
        PrivateKey key = KeyFactory.getInstance("EC")
                .generatePrivate(new PKCS8EncodedKeySpec(pemBody(args[4])));
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        char[] pw = "x".toCharArray();
        ks.setKeyEntry("client", key, pw, new java.security.cert.Certificate[] {client});
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
        kmf.init(ks, pw);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(host, port)) {
            SSLParameters params = s.getSSLParameters();
            params.setServerNames(java.util.List.of(new SNIHostName("localhost")));
            params.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(params);
            s.setSoTimeout(10000);
            s.startHandshake();
            OutputStream out = s.getOutputStream();
            out.write("GET / HTTP/1.0\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            out.flush();
            BufferedReader r = new BufferedReader(
                    new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII));
            for (String line; (line = r.readLine()) != null; ) {
                System.out.println(line);
            }
        } catch (Exception e) {
            System.out.println("failed: " + e);
            System.exit(1);
        }
    }
}
