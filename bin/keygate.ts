import { App } from 'aws-cdk-lib';
import { buildKeygateApp } from '../lib/keygate-app.ts';

/** `cdk synth|deploy -c regions=us-east-1,eu-west-1`: one cell stack per region. */
const app = new App();
buildKeygateApp(app);
app.synth();
